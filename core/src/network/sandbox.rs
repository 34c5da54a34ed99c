//! One container's sandbox, on the networks side: its network namespace, its
//! endpoints on each network (join and leave through the drivers' plans),
//! its published ports, its registration with the embedded DNS, and the
//! files that tell it about the network — `/etc/hosts` (with `--link`
//! entries, kept fresh when a linked container's address changes),
//! `/etc/resolv.conf` and `/etc/hostname`. Network management (create, ls,
//! rm, prune, connect, disconnect) is `ops.rs`; the container side calls
//! the hooks here at create, start, stop and daemon start.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_model::container::{ContainerRecord, Status};
use berth_model::network::{EndpointCreateRequest, EndpointSettings, JoinRequest, NetAction, NetworkPlan, NetworkRecord, NetworkingConfig};
use berth_runtime::files::{self, Durability};

use crate::error::{driver_error, EngineError, EngineResult};
use super::{executor, netns, NetworkService};
use super::ipam::Pool;
use super::NetnsMode;
use super::NetworkMode;
use super::ops::{net_err, random_id, user_defined, LiveEndpoint, HOST_PORTS_WARNING};
use super::ports::{self, PublishedPort};

/// `/etc/hosts` of a container: localhost entries, `--add-host`s, and the
/// container's own name on its address (when it has one).
pub fn hosts_file(hostname: &str, address: Option<&str>, extra_hosts: &[String]) -> EngineResult<String> {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in extra_hosts {
        // `name:ip` (Docker also accepts `name=ip`); IPv6 addresses contain colons.
        let (name, ip) = h
            .split_once('=')
            .or_else(|| h.split_once(':'))
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid IP address in add-host: {h:?}")))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if ip.parse::<std::net::IpAddr>().is_err() && ip != "host-gateway" {
            return Err(EngineError::InvalidArgument(format!("invalid IP address in add-host: {ip:?}")));
        }
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some(a) = address {
        s.push_str(&format!("{a}\t{hostname}\n"));
    }
    Ok(s)
}

/// `/etc/resolv.conf` of a container from the host's: loopback nameservers
/// are dropped (they do not answer inside another network namespace) and
/// Google's public servers stand in when none is left, as Docker does;
/// `--dns`, `--dns-search`, `--dns-option` replace the host's values.
pub fn resolv_conf(host: &str, dns: &[String], search: &[String], options: &[String]) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(ip) = f.next() {
                    let loopback = ip.parse::<std::net::IpAddr>().map(|a| a.is_loopback()).unwrap_or(false);
                    if !loopback {
                        servers.push(ip.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => searches = f.map(str::to_string).collect(),
            Some("options") => opts.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if !search.is_empty() {
        searches = search.iter().filter(|s| *s != ".").cloned().collect();
    }
    if !options.is_empty() {
        opts = options.to_vec();
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    out
}

/// Writes `bytes` into `path` in place: the file is bind-mounted into a
/// running container, and a rename would leave the container the old inode.
fn write_in_place(path: &Path, bytes: &[u8]) -> EngineResult<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| EngineError::io(format!("opening {}", path.display()), e))?;
    f.write_all(bytes).map_err(|e| EngineError::io(format!("writing {}", path.display()), e))
}

/// `name[:alias]` of a `--link`, without leading slashes.
fn split_link(link: &str) -> (String, String) {
    let (name, alias) = match link.split_once(':') {
        Some((n, a)) => (n, a),
        None => (link, link),
    };
    let name = name.trim_start_matches('/').to_string();
    // Docker stores `/db:/web/mysql`: the alias is the last path element.
    let alias = alias.rsplit('/').next().unwrap_or(alias).to_string();
    (name, alias)
}

impl NetworkService {
    // ---- container hooks ----

    /// At create: `<root>/containers/<id>/` with `hostname`, `hosts` and
    /// `resolv.conf` as the network mode makes them (shared with the
    /// container whose namespace it joins, the host's, or its own).
    pub(crate) fn write_sandbox_files(&self, record: &ContainerRecord, mode: &NetworkMode) -> EngineResult<()> {
        let dir = self.containers.dir(record.id.as_str());
        fs::create_dir_all(&dir).map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        let hc = &record.host_config;
        let (hosts, resolv) = match mode {
            NetworkMode::Container(other) => {
                let from = self.containers.dir(other);
                let read = |name: &str| {
                    fs::read_to_string(from.join(name))
                        .map_err(|e| EngineError::io(format!("reading {name} of container {other}"), e))
                };
                (read("hosts")?, read("resolv.conf")?)
            }
            NetworkMode::Host => (
                fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts_file("", None, &[]).unwrap_or_default()),
                fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            _ => {
                let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                (
                    hosts_file(&record.config.hostname, None, hc.extra_hosts.as_deref().unwrap_or_default())?,
                    resolv_conf(
                        &host,
                        hc.dns.as_deref().unwrap_or_default(),
                        hc.dns_search.as_deref().unwrap_or_default(),
                        hc.dns_options.as_deref().unwrap_or_default(),
                    ),
                )
            }
        };
        let hostname = format!("{}\n", record.config.hostname);
        // Bind-mounted into the container, where every user must read them (Docker's 0644).
        let sandbox_files = [("hostname", hostname.as_bytes()), ("hosts", hosts.as_bytes()), ("resolv.conf", resolv.as_bytes())];
        files::replace_in(&dir, &sandbox_files, 0o644, Durability::Synced)
            .map_err(|e| EngineError::io(format!("writing hostname, hosts and resolv.conf in {}", dir.display()), e))
    }

    /// At create: resolves `HostConfig.NetworkMode` (default `bridge`) and
    /// `NetworkingConfig` into `record.networks`, validating what Docker
    /// validates (unknown network, `--ip` outside a user-defined subnet,
    /// aliases or links where they are not allowed, `-p` with host mode).
    /// Returns warnings. Writes nothing.
    pub(crate) fn plan_container_networks(
        &self,
        record: &mut ContainerRecord,
        networking: &NetworkingConfig,
    ) -> EngineResult<Vec<String>> {
        let mut warnings = Vec::new();
        let hc = &mut record.host_config;
        if matches!(hc.network_mode.as_str(), "" | "default") {
            hc.network_mode = "bridge".into();
        }
        let has_ports = hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || hc.publish_all_ports;
        let has_links = hc.links.as_ref().is_some_and(|l| !l.is_empty());
        let mode = super::parse_network_mode(&hc.network_mode)?;
        record.networks.clear();
        let net_name = match mode {
            NetworkMode::Host => {
                if has_links {
                    return Err(EngineError::InvalidArgument(
                        "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
                    ));
                }
                if has_ports {
                    warnings.push(HOST_PORTS_WARNING.to_string());
                }
                "host".to_string()
            }
            NetworkMode::None => "none".to_string(),
            NetworkMode::Container(_) => {
                if has_ports {
                    return Err(EngineError::InvalidArgument(
                        "conflicting options: port publishing and the container type network mode".into(),
                    ));
                }
                return Ok(warnings);
            }
            NetworkMode::Network(ref n) => n.clone(),
        };
        let primary = self.network_record(&net_name)?;
        let lookup_settings = |net: &NetworkRecord| -> EndpointSettings {
            networking
                .endpoints_config
                .iter()
                .find(|(k, _)| {
                    **k == net.name
                        || **k == net.id
                        || (k.len() >= 12 && net.id.starts_with(k.as_str()))
                        || **k == net_name
                })
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        let mut settings = lookup_settings(&primary);
        self.check_endpoint_settings(&primary, &settings)?;
        settings.network_id = primary.id.clone();
        let primary_key = primary.name.clone();
        record.networks.insert(primary_key.clone(), settings);
        // More networks at create (API 1.44+), for bridge-like modes only.
        for (key, s) in &networking.endpoints_config {
            let net = self.network_record(key)?;
            if net.id == primary.id {
                continue;
            }
            if !matches!(mode, NetworkMode::Network(_)) || !user_defined(&net.name) && net.name != "bridge" {
                return Err(EngineError::InvalidArgument(format!(
                    "Container cannot be connected to network endpoints: {}, {}",
                    primary.name, net.name
                )));
            }
            self.check_endpoint_settings(&net, s)?;
            let mut s = s.clone();
            s.network_id = net.id.clone();
            record.networks.insert(net.name.clone(), s);
        }
        for link in record.host_config.links.iter().flatten() {
            let (name, _) = split_link(link);
            if self.containers.lookup(&name).is_err() {
                return Err(EngineError::InvalidArgument(format!("could not get container for {name}")));
            }
        }
        if let Some(mac) = record.config.mac_address.as_deref().filter(|m| !m.is_empty()) {
            executor::parse_mac(mac).map_err(net_err("--mac-address"))?;
        }
        Ok(warnings)
    }

    /// At start, before the spec is built: the container's namespace
    /// (`<run>/netns/<id>`), an address per network, the drivers' join plans,
    /// published ports, DNS, `/etc/hosts` and `resolv.conf`. Fills the runtime
    /// fields of `record` (networks, ports, sandbox_key). All or nothing: on
    /// error everything it did is undone.
    pub(crate) fn setup_container_network(&self, record: &mut ContainerRecord) -> EngineResult<NetnsMode> {
        let mode = super::parse_network_mode(&record.host_config.network_mode)?;
        match mode {
            NetworkMode::None => return Ok(NetnsMode::New),
            NetworkMode::Host => return Ok(NetnsMode::Host),
            NetworkMode::Container(other) => {
                let o = self.containers.lookup(&other)?;
                if !matches!(o.state.status, Status::Running | Status::Paused) || o.state.pid <= 0 {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network namespace of a non running container: {}",
                        o.id
                    )));
                }
                if !o.sandbox_key.is_empty() && netns::is_netns(Path::new(&o.sandbox_key)) {
                    return Ok(NetnsMode::Join(PathBuf::from(&o.sandbox_key)));
                }
                return Ok(NetnsMode::Join(PathBuf::from(format!("/proc/{}/ns/net", o.state.pid))));
            }
            NetworkMode::Network(_) => {}
        }
        for link in record.host_config.links.iter().flatten() {
            let (name, alias) = split_link(link);
            let other = self.containers.lookup(&name)
                .map_err(|_| EngineError::InvalidArgument(format!("could not get container for {name}")))?;
            if !matches!(other.state.status, Status::Running | Status::Paused) {
                return Err(EngineError::Conflict(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    other.name, record.name
                )));
            }
        }
        match self.setup_network_namespace(record) {
            Ok(path) => Ok(NetnsMode::Join(path)),
            Err(e) => {
                self.teardown_container_network(record);
                Err(e)
            }
        }
    }

    /// Makes `<run>/netns` a shared mount point, once per engine.
    pub(super) fn prepare_netns_dir(&self) -> EngineResult<()> {
        if self.state.netns_ready.get().is_none() {
            netns::prepare_dir(&self.run).map_err(net_err("preparing the network namespace directory"))?;
            let _ = self.state.netns_ready.set(());
        }
        Ok(())
    }

    fn setup_network_namespace(&self, record: &mut ContainerRecord) -> EngineResult<PathBuf> {
        self.prepare_netns_dir()?;
        let path = netns::netns_path(&self.run, record.id.as_str());
        netns::create(&path).map_err(net_err("creating the container's network namespace"))?;
        record.sandbox_key = path.to_string_lossy().into_owned();
        // The network the mode names first (eth0), then the others by name.
        let mode = record.host_config.network_mode.clone();
        let mut order: Vec<String> = record.networks.keys().cloned().collect();
        order.sort_by_key(|k| {
            let s = &record.networks[k];
            let primary = *k == mode || s.network_id == mode || (mode.len() >= 12 && s.network_id.starts_with(&mode));
            (!primary, k.clone())
        });
        for (i, key) in order.iter().enumerate() {
            self.attach_endpoint(record, key, &path, &format!("eth{i}"), i == 0)?;
        }
        self.publish_ports(record)?;
        if record.networks.keys().any(|n| user_defined(n)) {
            if let Some(d) = self.dns() {
                d.attach(record.id.as_str(), &path).map_err(net_err("starting the embedded DNS"))?;
            }
        }
        self.write_network_files(record)?;
        self.refresh_linking_containers(record);
        Ok(path)
    }

    /// Creates and joins the endpoint of `record` on network `key`.
    pub(super) fn attach_endpoint(
        &self,
        record: &mut ContainerRecord,
        key: &str,
        path: &Path,
        ifname: &str,
        primary: bool,
    ) -> EngineResult<()> {
        let settings = record.networks.get(key).cloned().unwrap_or_default();
        let net = self.network_record(if settings.network_id.is_empty() { key } else { &settings.network_id })?;
        self.not_being_removed(&net)?;
        let driver = self.driver_of(&net)?;
        let pool =
            Pool::of(&net).ok_or_else(|| EngineError::Internal(format!("network {} has no IPv4 subnet", net.name)))?;
        let wanted = settings
            .ipam_config
            .as_ref()
            .map(|c| c.ipv4_address.as_str())
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<Ipv4Addr>().map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {a}")))
            })
            .transpose()?;
        let endpoint_id = random_id()?;
        // Recorded first: from here teardown releases what this makes.
        if let Some(s) = record.networks.get_mut(key) {
            s.endpoint_id = endpoint_id.clone();
            s.network_id = net.id.clone();
        }
        let ip = self.state.ipam.allocate(&self.store, &net, &endpoint_id, wanted)?;
        let mac = if !settings.mac_address.is_empty() {
            Some(settings.mac_address.clone())
        } else if primary {
            record.config.mac_address.clone().filter(|m| !m.is_empty())
        } else {
            None
        };
        let info = driver
            .create_endpoint(&EndpointCreateRequest {
                network_id: net.id.clone(),
                endpoint_id: endpoint_id.clone(),
                address: Some(format!("{ip}/{}", pool.subnet.prefix)),
                address_v6: None,
                mac_address: mac,
                options: settings.driver_opts.clone().unwrap_or_default(),
            })
            .map_err(|e| driver_error(&format!("network {}", net.name), e))?;
        let plan = driver
            .join(&JoinRequest {
                network_id: net.id.clone(),
                endpoint_id: endpoint_id.clone(),
                sandbox_key: path.to_string_lossy().into_owned(),
                interface_name: ifname.to_string(),
                options: BTreeMap::new(),
            })
            .map_err(|e| driver_error(&format!("network {}", net.name), e))?;
        self.apply_plan(driver.as_ref(), &plan, Some(path), &format!("connecting to network {}", net.name))?.keep();
        let short = record.id.short().to_string();
        if user_defined(&net.name) {
            let mut names = vec![record.name.to_ascii_lowercase(), short.clone()];
            names.extend(settings.aliases.iter().flatten().map(|a| a.to_ascii_lowercase()));
            self.state.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(record.id.to_string())
                .or_default()
                .push(LiveEndpoint { network_id: net.id.clone(), endpoint_id: endpoint_id.clone(), ip, names });
        }
        if let Some(s) = record.networks.get_mut(key) {
            s.ip_address = ip.to_string();
            s.ip_prefix_len = pool.subnet.prefix;
            s.gateway =
                if net.internal { String::new() } else { pool.gateway.map(|g| g.to_string()).unwrap_or_default() };
            s.mac_address = info.mac_address.unwrap_or_default();
            if user_defined(&net.name) {
                let mut names = vec![record.name.clone(), short];
                names.extend(s.aliases.clone().unwrap_or_default());
                names.retain(|n| !n.is_empty());
                names.dedup();
                s.dns_names = Some(names);
            }
        }
        Ok(())
    }

    /// Leaves and deletes the endpoint of `record` on network `key` and
    /// frees its address; clears its runtime fields. Logs what fails.
    pub(super) fn detach_endpoint(&self, record: &mut ContainerRecord, key: &str, sandbox: Option<&Path>) {
        let Some(s) = record.networks.get(key).cloned() else {
            return;
        };
        if s.endpoint_id.is_empty() {
            return;
        }
        let id = record.id.to_string();
        {
            let mut live = self.state.live.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = live.get_mut(&id) {
                list.retain(|e| e.endpoint_id != s.endpoint_id);
                if list.is_empty() {
                    live.remove(&id);
                }
            }
        }
        match self.network_record(if s.network_id.is_empty() { key } else { &s.network_id }) {
            Ok(net) => {
                if let Ok(driver) = self.driver_of(&net) {
                    match driver.leave(&net.id, &s.endpoint_id) {
                        Ok(plan) => {
                            let sandbox = sandbox.filter(|p| netns::is_netns(p));
                            let plan = match sandbox {
                                Some(_) => plan,
                                // Steps in a namespace that is gone went with it.
                                None => NetworkPlan {
                                    actions: plan.actions.into_iter().filter(|a| !acts_in_sandbox(a)).collect(),
                                },
                            };
                            match self.apply_plan(driver.as_ref(), &plan, sandbox, &format!("leaving network {}", net.name)) {
                                Ok(a) => a.keep(),
                                Err(e) => {
                                    tracing::warn!(container = %id, network = %net.name, error = %e, "removing the container's interface")
                                }
                            }
                            // The engine named the interface at join; what
                            // the driver's plan left of it (a driver restarted
                            // since knows no name) goes now, found by its MAC.
                            if let (Some(sb), false) = (sandbox, s.mac_address.is_empty()) {
                                match executor::delete_links_with_mac(&s.mac_address, sb) {
                                    Ok(left) if !left.is_empty() => {
                                        tracing::info!(container = %id, network = %net.name, links = ?left, "removed the interface the driver left behind")
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        tracing::warn!(container = %id, network = %net.name, error = %e, "removing the container's interface")
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(container = %id, network = %net.name, error = %e, "the driver's leave failed")
                        }
                    }
                    if let Err(e) = driver.delete_endpoint(&net.id, &s.endpoint_id) {
                        tracing::warn!(container = %id, network = %net.name, error = %e, "deleting the endpoint");
                    }
                }
                if let Err(e) = self.state.ipam.release(&self.store, &net.id, &s.endpoint_id) {
                    tracing::warn!(container = %id, network = %net.name, error = %e, "releasing the container's address");
                }
            }
            Err(e) => {
                tracing::debug!(container = %id, network = key, error = %e, "the network of an endpoint is gone")
            }
        }
        if let Some(s) = record.networks.get_mut(key) {
            s.endpoint_id.clear();
            s.ip_address.clear();
            s.ip_prefix_len = 0;
            s.gateway.clear();
            s.mac_address.clear();
            s.dns_names = None;
        }
    }

    /// The address of the container's first network (the one ports and links use).
    fn primary_address(record: &ContainerRecord) -> Option<Ipv4Addr> {
        let mode = &record.host_config.network_mode;
        let first = record
            .networks
            .iter()
            .find(|(k, s)| *k == mode || s.network_id == *mode)
            .or_else(|| record.networks.iter().find(|(_, s)| !s.ip_address.is_empty()));
        first.and_then(|(_, s)| s.ip_address.parse().ok())
    }

    /// `-p` and `-P`: proxies and NAT rules to the container's first address.
    fn publish_ports(&self, record: &mut ContainerRecord) -> EngineResult<()> {
        let hc = &record.host_config;
        let mut requests = ports::requests_from_port_map(&hc.port_bindings.clone().unwrap_or_default())
            .map_err(net_err("published ports"))?;
        let exposed: Vec<String> =
            record.config.exposed_ports.as_ref().map(|e| e.keys().cloned().collect()).unwrap_or_default();
        if hc.publish_all_ports {
            for key in &exposed {
                let Ok((port, proto)) = ports::parse_port_key(key) else {
                    continue;
                };
                if !requests.iter().any(|r| r.container_port == port && r.proto == proto) {
                    requests.push(ports::PortRequest {
                        proto,
                        host_ip: None,
                        host_port: 0,
                        host_port_end: None,
                        container_port: port,
                    });
                }
            }
        }
        if requests.is_empty() {
            record.ports = ports::ports_settings(&[], &exposed);
            return Ok(());
        }
        let ip = Self::primary_address(record)
            .ok_or_else(|| EngineError::InvalidArgument("published ports need a network with an address".into()))?;
        let published =
            self.state.ports.publish(record.id.as_str(), ip, &requests).map_err(net_err("publishing ports"))?;
        let mut all_exposed = exposed;
        all_exposed.extend(requests.iter().map(|r| ports::port_key(&r.proto, r.container_port)));
        record.ports = ports::ports_settings(&published, &all_exposed);
        let plan = NetworkPlan {
            actions: published
                .iter()
                .flat_map(ports::nat_rules)
                .map(|rule| NetAction::AddFirewallRule { rule })
                .collect(),
        };
        self.apply_own_plan(&plan, "adding the NAT rules of published ports")?.keep();
        Ok(())
    }

    /// What `record.ports` says is published, for teardown and re-adoption.
    fn published_ports(record: &ContainerRecord) -> Vec<PublishedPort> {
        let Some(ip) = Self::primary_address(record) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, bindings) in &record.ports {
            let Ok((port, proto)) = ports::parse_port_key(key) else {
                continue;
            };
            for b in bindings.iter().flatten() {
                let Ok(host_port) = b.host_port.parse::<u16>() else {
                    continue;
                };
                let host_ip = b.host_ip.parse::<std::net::IpAddr>().ok().filter(|a| !a.is_unspecified());
                out.push(PublishedPort {
                    proto: proto.clone(),
                    host_ip,
                    host_port,
                    container_ip: ip,
                    container_port: port,
                });
            }
        }
        out
    }

    /// `hosts` and `resolv.conf` of a container on bridge-like networks.
    pub(super) fn write_network_files(&self, record: &ContainerRecord) -> EngineResult<()> {
        self.write_network_files_with(record, None)
    }

    /// `write_network_files`, with `fresh` standing in for its stored record
    /// (a linked container whose new address is not stored yet).
    fn write_network_files_with(&self, record: &ContainerRecord, fresh: Option<&ContainerRecord>) -> EngineResult<()> {
        let dir = self.containers.dir(record.id.as_str());
        let hc = &record.host_config;
        let mut hosts =
            hosts_file(&record.config.hostname, None, hc.extra_hosts.as_deref().unwrap_or_default())?;
        for line in self.link_lines(record, fresh) {
            hosts.push_str(&line);
        }
        if let Some(ip) = Self::primary_address(record) {
            hosts.push_str(&format!("{ip}\t{}\n", record.config.hostname));
        }
        write_in_place(&dir.join("hosts"), hosts.as_bytes())?;
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = if record.networks.keys().any(|n| user_defined(n)) {
            // The embedded DNS answers at 127.0.0.11 and forwards the rest.
            let base = resolv_conf(
                &host_resolv,
                &[],
                hc.dns_search.as_deref().unwrap_or_default(),
                hc.dns_options.as_deref().unwrap_or_default(),
            );
            let mut out = format!("nameserver {}\n", super::dns::DNS_ADDRESS);
            let mut has_options = false;
            for line in base.lines().filter(|l| !l.starts_with("nameserver")) {
                if line.starts_with("options") {
                    has_options = true;
                    out.push_str(&format!("{line} ndots:0\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if !has_options {
                out.push_str("options ndots:0\n");
            }
            out
        } else {
            resolv_conf(
                &host_resolv,
                hc.dns.as_deref().unwrap_or_default(),
                hc.dns_search.as_deref().unwrap_or_default(),
                hc.dns_options.as_deref().unwrap_or_default(),
            )
        };
        write_in_place(&dir.join("resolv.conf"), resolv.as_bytes())?;
        Ok(())
    }

    /// `/etc/hosts` lines of `record`'s `--link`s to running containers:
    /// `IP\talias shortid name`, as Docker writes them.
    fn link_lines(&self, record: &ContainerRecord, fresh: Option<&ContainerRecord>) -> Vec<String> {
        let mut out = Vec::new();
        for link in record.host_config.links.iter().flatten() {
            let (name, alias) = split_link(link);
            let Ok(mut other) = self.containers.lookup(&name) else {
                continue;
            };
            if let Some(f) = fresh.filter(|f| f.id == other.id) {
                other = f.clone();
            }
            let ip = other.networks.values().find(|s| !s.ip_address.is_empty()).map(|s| s.ip_address.clone());
            if let Some(ip) = ip {
                let mut names = vec![alias.clone()];
                for n in [other.id.short().to_string(), other.name.clone()] {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
                out.push(format!("{ip}\t{}\n", names.join(" ")));
            }
        }
        out
    }

    /// Docker's environment variables of `record`'s `--link`s (`ALIAS_NAME`,
    /// `ALIAS_PORT_80_TCP...`, `ALIAS_ENV_...`), for the process spec.
    pub(crate) fn link_env(&self, record: &ContainerRecord) -> Vec<String> {
        let mut env = Vec::new();
        for link in record.host_config.links.iter().flatten() {
            let (name, alias) = split_link(link);
            let Ok(other) = self.containers.lookup(&name) else {
                continue;
            };
            let prefix = alias.to_ascii_uppercase().replace('-', "_");
            env.push(format!("{prefix}_NAME=/{}/{alias}", record.name));
            let ip = other.networks.values().find(|s| !s.ip_address.is_empty()).map(|s| s.ip_address.clone());
            if let Some(ip) = ip {
                let mut ports: Vec<(u16, String)> = other
                    .config
                    .exposed_ports
                    .iter()
                    .flat_map(|m| m.keys())
                    .filter_map(|k| ports::parse_port_key(k).ok())
                    .collect();
                ports.sort();
                if let Some((p, proto)) = ports.first() {
                    env.push(format!("{prefix}_PORT={proto}://{ip}:{p}"));
                }
                for (p, proto) in &ports {
                    let base = format!("{prefix}_PORT_{p}_{}", proto.to_ascii_uppercase());
                    env.push(format!("{base}={proto}://{ip}:{p}"));
                    env.push(format!("{base}_ADDR={ip}"));
                    env.push(format!("{base}_PORT={p}"));
                    env.push(format!("{base}_PROTO={proto}"));
                }
            }
            for kv in other.config.env.iter().flatten() {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                // Docker leaves out what every image sets.
                if k == "HOME" || k == "PATH" {
                    continue;
                }
                env.push(format!("{prefix}_ENV_{k}={v}"));
            }
        }
        env
    }

    /// Rewrites `/etc/hosts` of every running container linking to `record`
    /// (its address may have changed).
    fn refresh_linking_containers(&self, record: &ContainerRecord) {
        let Ok(all) = self.containers.all() else {
            return;
        };
        for c in all {
            if c.id == record.id || !matches!(c.state.status, Status::Running | Status::Paused) {
                continue;
            }
            let links_here = c.host_config.links.iter().flatten().any(|l| {
                let (name, _) = split_link(l);
                name == record.name || record.id.as_str().starts_with(&name)
            });
            if links_here {
                if let Err(e) = self.write_network_files_with(&c, Some(record)) {
                    tracing::warn!(container = %c.id, error = %e, "rewriting /etc/hosts for a linked container's new address");
                }
            }
        }
    }

    /// After the container's process is gone (exit, failed start, removal):
    /// undoes `setup_container_network` and clears the runtime fields.
    /// Idempotent; logs what it cannot undo.
    pub(crate) fn teardown_container_network(&self, record: &mut ContainerRecord) {
        let id = record.id.to_string();
        if let Some(d) = self.state.dns.get() {
            if record.networks.keys().any(|n| user_defined(n)) {
                d.detach(&id);
            }
        }
        let published = Self::published_ports(record);
        if !published.is_empty() {
            let plan = NetworkPlan {
                actions: published
                    .iter()
                    .flat_map(ports::nat_rules)
                    .map(|rule| NetAction::DeleteFirewallRule { rule })
                    .collect(),
            };
            match self.apply_own_plan(&plan, "removing the NAT rules of published ports") {
                Ok(a) => a.keep(),
                Err(e) => tracing::warn!(container = %id, error = %e, "removing NAT rules"),
            }
            self.state.ports.unpublish(&id);
        }
        let path = netns::netns_path(&self.run, &id);
        let keys: Vec<String> = record.networks.keys().cloned().collect();
        for key in keys {
            self.detach_endpoint(record, &key, Some(&path));
        }
        if let Err(e) = netns::remove(&path) {
            tracing::warn!(container = %id, error = %e, "removing the container's network namespace");
        }
        record.sandbox_key.clear();
        record.ports.clear();
    }

    /// At daemon start, for a container still running: re-opens its DNS
    /// sockets and port proxies (kernel state survived the daemon).
    pub(crate) fn readopt_container_network(&self, record: &ContainerRecord) {
        let id = record.id.to_string();
        for (key, s) in &record.networks {
            if s.endpoint_id.is_empty() {
                continue;
            }
            // The driver learns the endpoint again (its memory died with the old daemon).
            let Ok(net) = self.network_record(if s.network_id.is_empty() { key } else { &s.network_id }) else {
                continue;
            };
            let Ok(driver) = self.driver_of(&net) else {
                continue;
            };
            let address = (!s.ip_address.is_empty()).then(|| format!("{}/{}", s.ip_address, s.ip_prefix_len));
            let req = EndpointCreateRequest {
                network_id: net.id.clone(),
                endpoint_id: s.endpoint_id.clone(),
                address,
                address_v6: None,
                mac_address: (!s.mac_address.is_empty()).then(|| s.mac_address.clone()),
                options: s.driver_opts.clone().unwrap_or_default(),
            };
            if let Err(e) = driver.create_endpoint(&req) {
                tracing::warn!(container = %id, network = %net.name, error = %e, "re-registering the endpoint with its driver");
            }
            if let (true, Ok(ip)) = (user_defined(&net.name), s.ip_address.parse::<Ipv4Addr>()) {
                let mut names = vec![record.name.to_ascii_lowercase(), record.id.short().to_string()];
                names.extend(s.aliases.iter().flatten().map(|a| a.to_ascii_lowercase()));
                self.state.live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(id.clone())
                    .or_default()
                    .push(LiveEndpoint { network_id: net.id.clone(), endpoint_id: s.endpoint_id.clone(), ip, names });
            }
        }
        if !record.sandbox_key.is_empty() && record.networks.keys().any(|n| user_defined(n)) {
            if let Some(d) = self.dns() {
                if let Err(e) = d.attach(&id, Path::new(&record.sandbox_key)) {
                    tracing::warn!(container = %id, error = %e, "re-attaching the embedded DNS");
                }
            }
        }
        let published = Self::published_ports(record);
        if !published.is_empty() {
            if let Err(e) = self.state.ports.readopt(&id, &published) {
                tracing::warn!(container = %id, error = %e, "re-publishing ports");
            }
        }
    }

    /// The embedded DNS's answer: addresses of containers named `name` (name,
    /// short or full ID, alias) on the user-defined networks `asking` is on.
    pub(crate) fn dns_lookup(&self, asking: &str, name: &str) -> Vec<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let live = self.state.live.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mine) = live.get(asking) else {
            return Vec::new();
        };
        let nets: BTreeSet<&str> = mine.iter().map(|e| e.network_id.as_str()).collect();
        let mut out = Vec::new();
        for (container, eps) in live.iter() {
            for e in eps.iter().filter(|e| nets.contains(e.network_id.as_str())) {
                let hit = e.names.iter().any(|n| *n == name) || (name.len() >= 12 && container.starts_with(&name));
                if hit && !out.contains(&e.ip) {
                    out.push(e.ip);
                }
            }
        }
        // A stable order; the DNS server rotates it per query.
        out.sort();
        out
    }
}

/// Whether a plan step acts inside the container's namespace.
fn acts_in_sandbox(a: &NetAction) -> bool {
    use berth_model::network::Netns;
    match a {
        NetAction::CreateLink { ns, .. }
        | NetAction::DeleteLink { ns, .. }
        | NetAction::AddAddress { ns, .. }
        | NetAction::SetUp { ns, .. }
        | NetAction::AddRoute { ns, .. }
        | NetAction::Sysctl { ns, .. } => *ns == Netns::Sandbox,
        NetAction::MoveToSandbox { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn resolv_conf_drops_loopback_and_falls_back() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        assert_eq!(resolv_conf(host, &[], &[], &[]), "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n");
        assert_eq!(resolv_conf("nameserver 127.0.0.1\n", &[], &[], &[]), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert_eq!(resolv_conf(host, &v(&["1.1.1.1"]), &[], &[]).lines().next(), Some("nameserver 1.1.1.1"));
    }

    #[test]
    fn hosts_has_localhost_extra_hosts_and_own_name() {
        let h = hosts_file("box", Some("10.1.0.2"), &v(&["db:10.0.0.5", "v6=::1"])).unwrap();
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.5\tdb\n") && h.contains("::1\tv6\n") && h.ends_with("10.1.0.2\tbox\n"));
        assert!(hosts_file("box", None, &v(&["nonsense"])).is_err());
        assert!(hosts_file("box", None, &v(&["x:999.1.1.1"])).is_err());
    }

    #[test]
    fn links_split_like_docker() {
        assert_eq!(split_link("db:mysql"), ("db".to_string(), "mysql".to_string()));
        assert_eq!(split_link("/db:/web/mysql"), ("db".to_string(), "mysql".to_string()));
        assert_eq!(split_link("db"), ("db".to_string(), "db".to_string()));
    }
}
