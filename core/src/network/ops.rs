//! The engine's network operations: create, inspect, list, remove, prune,
//! connect and disconnect, and the predefined networks at daemon start. One
//! container's side of a network (its namespace, endpoints, ports, DNS
//! names, `/etc/hosts`) is `sandbox.rs`.
//!
//! Networks are stored in the `networks` table by ID (`NetworkRecord`), their
//! address allocations beside them (`ipam.rs`). A container's endpoints are
//! in its record (`networks`, by network name): what was asked at create or
//! connect, and while it runs the endpoint ID, address, gateway and MAC it
//! got. An endpoint exists exactly while its `endpoint_id` is set; teardown
//! keys off that, which makes it idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use berth_model::container::{ContainerRecord, Status};
use berth_model::drivers::NetworkDriver;
use berth_model::network::{EndpointSettings, IpamConfigEntry, IpamPool, NetworkCreateRequest, NetworkPlan, NetworkRecord};

use crate::error::{driver_error, EngineError, EngineResult};
use crate::filters::Filters;
use crate::store::DefinitionTable;
use super::dns::{DnsServer, NameLookup};
use super::executor::{self, Authority};
use super::ipam::{self, Ipam, Pool, Subnet};
use super::{NetError, NetworkContainer, NetworkCreate, NetworkDetails, NetworkService};
use super::netns;
use super::NetworkMode;
use super::ports::PortPublisher;

/// The predefined networks, as Docker names them.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];
/// The default bridge's link name and pool.
const DEFAULT_BRIDGE_NAME: &str = "berth0";
const DEFAULT_BRIDGE_GATEWAY: &str = "172.17.0.1";
/// Docker's warning for `-p` with `--network host`.
pub const HOST_PORTS_WARNING: &str = "Published ports are discarded when using host network mode";

/// Live network state the engine holds: the embedded DNS, the port
/// publisher (proxies), per-network IPAM locks.
#[derive(Default)]
pub struct NetworkState {
    pub(crate) ipam: Ipam,
    pub(crate) ports: PortPublisher,
    pub(super) dns: OnceLock<DnsServer>,
    /// Serialises create/remove/connect/disconnect of networks: names stay
    /// unique and "in use" checks hold until the change is made.
    admin: Mutex<()>,
    /// Networks whose plugin driver is asked to create them now, without
    /// `admin` held (a plugin may take up to its deadline): their names and
    /// subnets are taken meanwhile. Changed only with `admin` held.
    creating: Mutex<Vec<(String, Vec<Subnet>)>>,
    /// IDs of networks whose plugin driver is asked to delete them now,
    /// without `admin` held. Changed only with `admin` held.
    removing: Mutex<Vec<String>>,
    /// Endpoints a plugin driver is asked to connect or disconnect now,
    /// without `admin` held, as (network ID, container name): the network
    /// counts as in use meanwhile. Added only with `admin` held.
    endpoints_in_flight: Mutex<Vec<(String, String)>>,
    /// Whether `<run>/netns` has been made a shared mount point.
    pub(super) netns_ready: OnceLock<()>,
    /// Live endpoints on user-defined networks by container ID, for the
    /// embedded DNS: in memory because a container asks before its start
    /// is recorded in the store.
    pub(super) live: Mutex<BTreeMap<String, Vec<LiveEndpoint>>>,
}

/// An entry of `NetworkState::endpoints_in_flight`, removed when dropped.
struct EndpointInFlight<'a> {
    list: &'a Mutex<Vec<(String, String)>>,
    entry: (String, String),
}

impl NetworkState {
    /// Marks an endpoint of `container` on `network_id` as in flight; call
    /// with `admin` held.
    fn endpoint_in_flight(&self, network_id: &str, container: &str) -> EndpointInFlight<'_> {
        let entry = (network_id.to_string(), container.to_string());
        self.endpoints_in_flight.lock().unwrap_or_else(|e| e.into_inner()).push(entry.clone());
        EndpointInFlight { list: &self.endpoints_in_flight, entry }
    }
}

impl Drop for EndpointInFlight<'_> {
    fn drop(&mut self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = list.iter().position(|e| *e == self.entry) {
            list.remove(i);
        }
    }
}

/// See `NetworkService::hold_for_driver`; held for its `Drop`.
enum DriverHold<'a> {
    Locked(#[allow(dead_code)] MutexGuard<'a, ()>),
    InFlight(#[allow(dead_code)] EndpointInFlight<'a>),
}

/// What the embedded DNS knows of one endpoint.
#[derive(Clone, Debug)]
pub(super) struct LiveEndpoint {
    pub(super) network_id: String,
    pub(super) endpoint_id: String,
    pub(super) ip: Ipv4Addr,
    /// Lowercase: the container's name, short ID and aliases.
    pub(super) names: Vec<String>,
}

/// The embedded DNS's view of the networks service.
struct Lookup {
    networks: Weak<NetworkService>,
}

impl NameLookup for Lookup {
    fn lookup(&self, asking_container: &str, name: &str) -> Vec<Ipv4Addr> {
        match self.networks.upgrade() {
            Some(n) => n.dns_lookup(asking_container, name),
            None => Vec::new(),
        }
    }
}

pub(super) fn random_id() -> EngineResult<String> {
    Ok(hex::encode(crate::ids::random_bytes(32)?))
}

pub(super) fn net_err(what: &str) -> impl FnOnce(NetError) -> EngineError + '_ {
    move |e| match e {
        NetError::Invalid(m) => EngineError::InvalidArgument(format!("{what}: {m}")),
        NetError::PortInUse(m) => EngineError::Conflict(m),
        NetError::Exhausted(m) => EngineError::Conflict(m),
        NetError::Io { context, source } => EngineError::io(format!("{what}: {context}"), source),
        other => EngineError::Internal(format!("{what}: {other}")),
    }
}

/// Whether `name` is a user-defined network (the embedded DNS serves those).
pub(super) fn user_defined(name: &str) -> bool {
    !PREDEFINED.contains(&name)
}

/// Docker's "in use" test: the network has endpoints (running containers).
pub(super) fn active_on(records: &[ContainerRecord], network_id: &str) -> Vec<ContainerRecord> {
    records
        .iter()
        .filter(|c| c.networks.values().any(|s| s.network_id == network_id && !s.endpoint_id.is_empty()))
        .cloned()
        .collect()
}

impl NetworkService {
    // ---- the store ----

    /// Every network record (allocation entries skipped).
    fn network_records(&self) -> EngineResult<Vec<NetworkRecord>> {
        let defs = self.store.read()?.definitions(DefinitionTable::Networks)?;
        let mut out = Vec::new();
        for (key, json) in defs {
            if ipam::is_allocations_key(&key) {
                continue;
            }
            let r: NetworkRecord = serde_json::from_str(&json)
                .map_err(|e| EngineError::Internal(format!("network record {key} is corrupt: {e}")))?;
            out.push(r);
        }
        Ok(out)
    }

    /// A network by full ID, name, or unique ID prefix (Docker's order).
    pub(crate) fn network_record(&self, id_or_name: &str) -> EngineResult<NetworkRecord> {
        let all = self.network_records()?;
        if let Some(n) = all.iter().find(|n| n.id == id_or_name) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name == id_or_name) {
            return Ok(n.clone());
        }
        let matches: Vec<&NetworkRecord> =
            all.iter().filter(|n| !id_or_name.is_empty() && n.id.starts_with(id_or_name)).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(EngineError::NotFound(format!("network {id_or_name} not found"))),
            n => Err(EngineError::InvalidArgument(format!(
                "network {id_or_name} is ambiguous ({n} matches found based on ID prefix)"
            ))),
        }
    }

    pub(super) fn driver_of(&self, net: &NetworkRecord) -> EngineResult<Arc<dyn NetworkDriver>> {
        self.drivers.network.get(&net.driver).ok_or_else(|| {
            EngineError::NotFound(format!(
                "network {}: its driver \"{}\" is not available (registered: {})",
                net.name,
                net.driver,
                self.drivers.network.names().join(", ")
            ))
        })
    }

    fn create_request(net: &NetworkRecord) -> NetworkCreateRequest {
        NetworkCreateRequest {
            network_id: net.id.clone(),
            name: net.name.clone(),
            ipv4: net
                .ipam
                .config
                .iter()
                .map(|c| IpamPool {
                    subnet: c.subnet.clone(),
                    ip_range: (!c.ip_range.is_empty()).then(|| c.ip_range.clone()),
                    gateway: (!c.gateway.is_empty()).then(|| c.gateway.clone()),
                })
                .collect(),
            ipv6: Vec::new(),
            options: net.options.clone(),
            internal: net.internal,
        }
    }

    /// Applies a plan of `driver` in the daemon's namespace (and `sandbox`'s).
    pub(super) fn apply_plan(&self, driver: &dyn NetworkDriver, plan: &NetworkPlan, sandbox: Option<&Path>, what: &str) -> EngineResult<executor::Applied> {
        let owner = driver.name();
        let by = if driver.confined() { Authority::Confined { owner } } else { Authority::Trusted { owner } };
        executor::apply(plan, sandbox, by, &self.firewall).map_err(net_err(what))
    }

    /// Applies a plan of the engine's own (port publishing rules).
    pub(super) fn apply_own_plan(&self, plan: &NetworkPlan, what: &str) -> EngineResult<executor::Applied> {
        executor::apply(plan, None, Authority::Trusted { owner: "engine" }, &self.firewall).map_err(net_err(what))
    }

    pub(super) fn dns(&self) -> Option<&DnsServer> {
        if let Some(d) = self.state.dns.get() {
            return Some(d);
        }
        let lookup: Arc<dyn NameLookup> = Arc::new(Lookup { networks: self.me.clone() });
        Some(self.state.dns.get_or_init(|| DnsServer::new(lookup, host_resolvers())))
    }

    // ---- network commands ----

    /// `docker network create`: validates the name, driver, options and IPAM
    /// data (ip-range and gateway inside the subnet, no overlap with another
    /// network or a host route), picks a subnet from the pool when none is
    /// given, has the driver set it up. Returns the new network's ID.
    pub fn create(&self, request: NetworkCreate) -> EngineResult<String> {
        let name = request.name.trim().to_string();
        if name.is_empty() {
            return Err(EngineError::InvalidArgument("network name must not be empty".into()));
        }
        if name.chars().any(|c| c.is_whitespace() || c == '/' || c == ':') {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name {name:?}: it may not contain whitespace, '/' or ':'"
            )));
        }
        let driver_name = if request.driver.is_empty() { "bridge".to_string() } else { request.driver.clone() };
        if matches!(driver_name.as_str(), "host" | "null") {
            return Err(EngineError::Forbidden(format!(
                "only one instance of \"{driver_name}\" network is allowed"
            )));
        }
        let driver = self
            .drivers
            .network
            .get(&driver_name)
            .ok_or_else(|| EngineError::NotFound(format!("plugin \"{driver_name}\" not found")))?;
        if !matches!(request.ipam.driver.as_str(), "" | "default") {
            return Err(EngineError::InvalidArgument(format!(
                "IPAM driver \"{}\" is not supported: berth has the default IPAM driver only",
                request.ipam.driver
            )));
        }
        if request.enable_ipv6 || request.ipam.config.iter().any(|c| c.subnet.contains(':')) {
            return Err(EngineError::InvalidArgument("IPv6 networks are not supported by berth yet".into()));
        }
        let mut admin = self.state.admin.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.network_records()?;
        let creating = self.state.creating.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if existing.iter().any(|n| n.name == name) || creating.iter().any(|(n, _)| *n == name) {
            return Err(EngineError::Conflict(format!("network with name {name} already exists")));
        }
        let mut taken: Vec<Subnet> = existing.iter().filter_map(|n| Pool::of(n).map(|p| p.subnet)).collect();
        taken.extend(creating.into_iter().flat_map(|(_, subnets)| subnets));
        let mut config = request.ipam.config.clone();
        let auto_subnet = config.is_empty();
        if auto_subnet {
            let subnet = ipam::pick_subnet(&taken, &ipam::host_routes()).map_err(net_err("picking a subnet"))?;
            config.push(IpamConfigEntry {
                subnet: subnet.to_string(),
                ip_range: String::new(),
                gateway: ipam::default_gateway(subnet).to_string(),
            });
        } else {
            ipam::validate_config(&config).map_err(|e| match e {
                NetError::Invalid(m) => EngineError::InvalidArgument(m),
                other => EngineError::Internal(other.to_string()),
            })?;
            for c in &mut config {
                let Some(s) = Subnet::parse(&c.subnet) else {
                    continue;
                };
                if taken.iter().any(|t| t.overlaps(&s)) {
                    return Err(EngineError::Forbidden(
                        "invalid pool request: Pool overlaps with other one on this address space".into(),
                    ));
                }
                if c.gateway.is_empty() {
                    c.gateway = ipam::default_gateway(s).to_string();
                }
            }
        }
        let record = NetworkRecord {
            name: name.clone(),
            id: random_id()?,
            created: berth_runtime::clock::now_rfc3339(),
            scope: "local".into(),
            driver: driver_name.clone(),
            enable_ipv6: false,
            ipam: berth_model::network::Ipam { driver: "default".into(), options: None, config },
            internal: request.internal,
            attachable: request.attachable,
            options: request.options.clone(),
            labels: request.labels.clone(),
        };
        let asked = if driver.confined() {
            // A plugin answers without the admin lock held; the name and
            // subnets stay taken until this create is done either way.
            let subnets: Vec<Subnet> = record.ipam.config.iter().filter_map(|c| Subnet::parse(&c.subnet)).collect();
            self.state.creating.lock().unwrap_or_else(|e| e.into_inner()).push((name.clone(), subnets));
            drop(admin);
            let asked = driver.create_network(&Self::create_request(&record));
            admin = self.state.admin.lock().unwrap_or_else(|e| e.into_inner());
            self.state.creating.lock().unwrap_or_else(|e| e.into_inner()).retain(|(n, _)| *n != name);
            asked
        } else {
            driver.create_network(&Self::create_request(&record))
        };
        let plan = asked.map_err(|e| driver_error(&format!("network {name}"), e))?;
        let applied = match self.apply_plan(driver.as_ref(), &plan, None, &format!("creating network {name}")) {
            Ok(a) => a,
            Err(e) => {
                // The driver's own clean-up concerns this ID alone: no lock.
                drop(admin);
                let _ = driver.delete_network(&record.id);
                return Err(e);
            }
        };
        if let Err(e) = self.store_network(&record, auto_subnet) {
            applied.undo();
            drop(admin);
            let _ = driver.delete_network(&record.id);
            return Err(e);
        }
        applied.keep();
        drop(admin);
        Ok(record.id)
    }

    /// Stores a new network with its (empty) allocations in one transaction.
    fn store_network(&self, record: &NetworkRecord, auto_subnet: bool) -> EngineResult<()> {
        let json = serde_json::to_string(record)
            .map_err(|e| EngineError::Internal(format!("encoding network {}: {e}", record.name)))?;
        let allocs = ipam::Allocations { auto_subnet, ..Default::default() };
        let ajson = serde_json::to_string(&allocs)
            .map_err(|e| EngineError::Internal(format!("encoding network {}: {e}", record.name)))?;
        let tx = self.store.write()?;
        tx.put_definition(DefinitionTable::Networks, &record.id, &json)?;
        tx.put_definition(DefinitionTable::Networks, &ipam::allocations_key(&record.id), &ajson)?;
        tx.commit()?;
        Ok(())
    }

    /// Whether the network's subnet was chosen by IPAM (no `--subnet`).
    fn auto_subnet(&self, network_id: &str) -> EngineResult<bool> {
        let j = self.store.read()?.definition(DefinitionTable::Networks, &ipam::allocations_key(network_id))?;
        Ok(j.and_then(|j| serde_json::from_str::<ipam::Allocations>(&j).ok()).is_none_or(|a| a.auto_subnet))
    }

    fn network_details(&self, record: NetworkRecord, containers: &[ContainerRecord]) -> NetworkDetails {
        let mut map = BTreeMap::new();
        for c in containers {
            for s in c.networks.values() {
                if s.network_id == record.id && !s.endpoint_id.is_empty() {
                    map.insert(
                        c.id.to_string(),
                        NetworkContainer {
                            name: c.name.clone(),
                            endpoint_id: s.endpoint_id.clone(),
                            mac_address: s.mac_address.clone(),
                            ipv4_address: if s.ip_address.is_empty() {
                                String::new()
                            } else {
                                format!("{}/{}", s.ip_address, s.ip_prefix_len)
                            },
                            ipv6_address: String::new(),
                        },
                    );
                }
            }
        }
        NetworkDetails { record, containers: map }
    }

    /// Finds a network by full ID, unique ID prefix or name.
    pub fn find(&self, id_or_name: &str) -> EngineResult<NetworkDetails> {
        let record = self.network_record(id_or_name)?;
        let containers = self.containers.all()?;
        Ok(self.network_details(record, &containers))
    }

    /// `docker network ls` with Docker's filters (`driver`, `id`, `label`,
    /// `name`, `scope`, `type`, `dangling`).
    pub fn list(&self, filters: &Filters) -> EngineResult<Vec<NetworkDetails>> {
        for (k, values) in filters {
            match k.as_str() {
                "driver" | "id" | "label" | "name" | "scope" => {}
                "type" => {
                    if let Some(v) = values.iter().find(|v| !matches!(v.as_str(), "custom" | "builtin")) {
                        return Err(EngineError::InvalidArgument(format!("invalid filter: 'type'='{v}'")));
                    }
                }
                "dangling" => {
                    if let Some(v) = values.iter().find(|v| !matches!(v.as_str(), "true" | "false" | "1" | "0")) {
                        return Err(EngineError::InvalidArgument(format!(
                            "invalid value for 'dangling': '{v}' (use true or false)"
                        )));
                    }
                }
                other => return Err(EngineError::InvalidArgument(format!("invalid filter '{other}'"))),
            }
        }
        let containers = self.containers.all()?;
        let mut out: Vec<NetworkDetails> = self
            .network_records()?
            .into_iter()
            .map(|r| self.network_details(r, &containers))
            .filter(|d| {
                let r = &d.record;
                let any =
                    |key: &str, f: &dyn Fn(&str) -> bool| filters.get(key).is_none_or(|vs| vs.iter().any(|v| f(v)));
                any("driver", &|v| r.driver == v)
                    && any("id", &|v| r.id.contains(v))
                    && any("name", &|v| r.name.contains(v))
                    && any("scope", &|v| r.scope == v)
                    && any("type", &|v| (v == "builtin") == PREDEFINED.contains(&r.name.as_str()))
                    && filters.get("label").is_none_or(|vs| vs.iter().all(|v| label_matches(&r.labels, v)))
                    && any("dangling", &|v| {
                        let dangling = d.containers.is_empty() && !PREDEFINED.contains(&r.name.as_str());
                        dangling == matches!(v, "true" | "1")
                    })
            })
            .collect();
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }

    /// `docker network rm`: refuses predefined networks and networks with
    /// containers attached (Docker's messages).
    pub fn remove(&self, id_or_name: &str) -> EngineResult<()> {
        let mut admin = Some(self.state.admin.lock().unwrap_or_else(|e| e.into_inner()));
        let net = self.network_record(id_or_name)?;
        self.remove_network_locked(&net, &mut admin)
    }

    /// Removes `net`; `admin` is held on entry and on return, and released
    /// while a plugin driver is asked (see `removing`).
    fn remove_network_locked<'a>(&'a self, net: &NetworkRecord, admin: &mut Option<MutexGuard<'a, ()>>) -> EngineResult<()> {
        if PREDEFINED.contains(&net.name.as_str()) {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        let containers = self.containers.all()?;
        let mut names: Vec<String> = active_on(&containers, &net.id).into_iter().map(|c| c.name).collect();
        let in_flight = self.state.endpoints_in_flight.lock().unwrap_or_else(|e| e.into_inner());
        names.extend(in_flight.iter().filter(|(n, _)| *n == net.id).map(|(_, c)| c.clone()));
        drop(in_flight);
        if !names.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints (containers: {})",
                net.name,
                net.id,
                names.join(", ")
            )));
        }
        match self.drivers.network.get(&net.driver) {
            Some(driver) => {
                let asked = if driver.confined() {
                    // A plugin answers without the admin lock held, as in
                    // create; the network is marked meanwhile so that nobody
                    // connects to it or removes it twice.
                    let mut removing = self.state.removing.lock().unwrap_or_else(|e| e.into_inner());
                    if removing.contains(&net.id) {
                        return Err(EngineError::Conflict(format!("network {} is being removed by another request", net.name)));
                    }
                    removing.push(net.id.clone());
                    drop(removing);
                    admin.take();
                    let asked = driver.delete_network(&net.id);
                    *admin = Some(self.state.admin.lock().unwrap_or_else(|e| e.into_inner()));
                    self.state.removing.lock().unwrap_or_else(|e| e.into_inner()).retain(|id| *id != net.id);
                    asked
                } else {
                    driver.delete_network(&net.id)
                };
                let plan = asked.map_err(|e| driver_error(&format!("network {}", net.name), e))?;
                self.apply_plan(driver.as_ref(), &plan, None, &format!("removing network {}", net.name))?.keep();
            }
            None => {
                tracing::warn!(network = %net.name, driver = %net.driver, "removing a network whose driver is gone")
            }
        }
        let tx = self.store.write()?;
        tx.delete_definition(DefinitionTable::Networks, &net.id)?;
        tx.delete_definition(DefinitionTable::Networks, &ipam::allocations_key(&net.id))?;
        tx.commit()?;
        self.state.ipam.forget(&net.id);
        Ok(())
    }

    /// `docker network prune`: removes unused user-defined networks; returns their names.
    pub fn prune(&self, filters: &Filters) -> EngineResult<Vec<String>> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "until") {
                return Err(EngineError::InvalidArgument(format!("invalid filter '{k}'")));
            }
        }
        let until = match filters.get("until").and_then(|v| v.first()) {
            Some(v) => Some(parse_until(v)?),
            None => None,
        };
        let mut admin = Some(self.state.admin.lock().unwrap_or_else(|e| e.into_inner()));
        let mut removed = Vec::new();
        let mut containers = self.containers.all()?;
        // Set after a removal: the lock may have been let go while a plugin
        // answered, so what was read before may be stale.
        let mut stale = false;
        for net in self.network_records()? {
            if stale {
                if self.network_record(&net.id).is_err() {
                    continue;
                }
                containers = self.containers.all()?;
                stale = false;
            }
            let being_removed = self.state.removing.lock().unwrap_or_else(|e| e.into_inner()).contains(&net.id);
            if PREDEFINED.contains(&net.name.as_str()) || !active_on(&containers, &net.id).is_empty() || being_removed {
                continue;
            }
            if !filters.get("label").is_none_or(|vs| vs.iter().all(|v| label_matches(&net.labels, v))) {
                continue;
            }
            if filters.get("label!").is_some_and(|vs| vs.iter().any(|v| label_matches(&net.labels, v))) {
                continue;
            }
            if let Some(t) = until {
                let created = chrono::DateTime::parse_from_rfc3339(&net.created).map(|d| d.timestamp()).unwrap_or(0);
                if created >= t {
                    continue;
                }
            }
            stale = true;
            match self.remove_network_locked(&net, &mut admin) {
                Ok(()) => removed.push(net.name.clone()),
                Err(e) => tracing::warn!(network = %net.name, error = %e, "pruning a network"),
            }
        }
        Ok(removed)
    }

    /// `docker network connect`, for the containers service, which holds
    /// the container and stores `record` through `save` (called while the
    /// network still counts the new endpoint as in use).
    pub(crate) fn connect(
        &self,
        network: &str,
        record: &mut ContainerRecord,
        settings: EndpointSettings,
        save: &dyn Fn(&ContainerRecord) -> EngineResult<()>,
    ) -> EngineResult<()> {
        let id = record.id.to_string();
        let admin = self.state.admin.lock().unwrap_or_else(|e| e.into_inner());
        let net = self.network_record(network)?;
        let mode = super::parse_network_mode(&record.host_config.network_mode)?;
        match mode {
            NetworkMode::Host | NetworkMode::Container(_) if net.name == "host" => {
                return Err(EngineError::InvalidArgument(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ))
            }
            NetworkMode::Host | NetworkMode::Container(_) => {
                return Err(EngineError::InvalidArgument(
                    "container sharing network namespace with another container or host cannot be connected to any other network".into(),
                ))
            }
            NetworkMode::None => {
                return Err(EngineError::InvalidArgument(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
                ))
            }
            NetworkMode::Network(_) => {}
        }
        if net.name == "host" {
            return Err(EngineError::InvalidArgument(
                "container cannot be disconnected from host network or connected to host network".into(),
            ));
        }
        if net.name == "none" {
            return Err(EngineError::InvalidArgument(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode"
                    .into(),
            ));
        }
        if record.networks.contains_key(&net.name) || record.networks.values().any(|s| s.network_id == net.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                record.name, net.name
            )));
        }
        let mut settings = settings;
        self.check_endpoint_settings(&net, &settings)?;
        self.not_being_removed(&net)?;
        settings.network_id = net.id.clone();
        let running = matches!(record.state.status, Status::Running | Status::Paused);
        record.networks.insert(net.name.clone(), settings);
        // A plugin is asked without the admin lock held; until the record is
        // saved the network counts the endpoint as in use.
        let _hold = self.hold_for_driver(admin, &net, &record.name);
        if running {
            let path = PathBuf::from(&record.sandbox_key);
            if record.sandbox_key.is_empty() || !netns::is_netns(&path) {
                return Err(EngineError::Conflict(format!(
                    "container {} has no network namespace of its own to connect",
                    record.name
                )));
            }
            let ifname = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !executor::link_exists(n, Some(&path)).unwrap_or(true))
                .unwrap_or_else(|| "eth9".into());
            if let Err(e) = self.attach_endpoint(record, &net.name, &path, &ifname, false) {
                self.detach_endpoint(record, &net.name, Some(&path));
                return Err(e);
            }
            if user_defined(&net.name) {
                if let Some(d) = self.dns() {
                    if let Err(e) = d.attach(record.id.as_str(), &path) {
                        tracing::warn!(container = %id, error = %e, "starting the embedded DNS for the container");
                    }
                }
            }
            self.write_network_files(record)?;
        }
        save(record)
    }

    /// `docker network disconnect [-f]`, for the containers service (as `connect`).
    pub(crate) fn disconnect(
        &self,
        network: &str,
        record: &mut ContainerRecord,
        force: bool,
        save: &dyn Fn(&ContainerRecord) -> EngineResult<()>,
    ) -> EngineResult<()> {
        let admin = self.state.admin.lock().unwrap_or_else(|e| e.into_inner());
        let (key, net) = match self.network_record(network) {
            Ok(net) => {
                if net.name == "host" || record.host_config.network_mode == "host" {
                    return Err(EngineError::InvalidArgument(
                        "container cannot be disconnected from host network or connected to host network".into(),
                    ));
                }
                let key = record
                    .networks
                    .iter()
                    .find(|(k, s)| s.network_id == net.id || **k == net.name)
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| {
                        EngineError::InvalidArgument(format!(
                            "container {} is not connected to network {}",
                            record.id, net.name
                        ))
                    })?;
                (key, Some(net))
            }
            // `-f` takes a container off a network that is gone.
            Err(e) if force && record.networks.contains_key(network) => {
                tracing::info!(network, error = %e, "force-disconnecting from a network that cannot be found");
                (network.to_string(), None)
            }
            Err(e) => return Err(e),
        };
        let _hold = match &net {
            Some(net) => self.hold_for_driver(admin, net, &record.name),
            None => DriverHold::Locked(admin),
        };
        let path = (!record.sandbox_key.is_empty()).then(|| PathBuf::from(&record.sandbox_key));
        self.detach_endpoint(record, &key, path.as_deref());
        record.networks.remove(&key);
        let running = matches!(record.state.status, Status::Running | Status::Paused);
        if running {
            if !record.networks.keys().any(|n| user_defined(n)) {
                if let Some(d) = self.state.dns.get() {
                    d.detach(record.id.as_str());
                }
            }
            self.write_network_files(record)?;
        }
        save(record)
    }

    /// What a connect or disconnect keeps while it asks `net`'s driver: the
    /// admin lock for an in-tree driver; for a plugin, which may take up to
    /// its deadline, an in-flight mark instead, so that other networks are
    /// not held up and this one still counts as in use.
    fn hold_for_driver<'a>(&'a self, admin: MutexGuard<'a, ()>, net: &NetworkRecord, container: &str) -> DriverHold<'a> {
        match self.drivers.network.get(&net.driver) {
            Some(driver) if driver.confined() => {
                let mark = self.state.endpoint_in_flight(&net.id, container);
                drop(admin);
                DriverHold::InFlight(mark)
            }
            _ => DriverHold::Locked(admin),
        }
    }

    pub(super) fn not_being_removed(&self, net: &NetworkRecord) -> EngineResult<()> {
        match self.state.removing.lock().unwrap_or_else(|e| e.into_inner()).contains(&net.id) {
            true => Err(EngineError::Conflict(format!("network {} is being removed", net.name))),
            false => Ok(()),
        }
    }

    /// Docker's checks of what a container asks of one network.
    pub(super) fn check_endpoint_settings(&self, net: &NetworkRecord, s: &EndpointSettings) -> EngineResult<()> {
        if let Some(ip) = s.ipam_config.as_ref().map(|c| c.ipv4_address.as_str()).filter(|a| !a.is_empty()) {
            if !user_defined(&net.name) {
                return Err(EngineError::InvalidArgument(
                    "user specified IP address is supported on user defined networks only".into(),
                ));
            }
            if self.auto_subnet(&net.id)? {
                return Err(EngineError::InvalidArgument(
                    "user specified IP address is supported only when connecting to networks with user configured subnets"
                        .into(),
                ));
            }
            let addr: Ipv4Addr =
                ip.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid IPv4 address: {ip}")))?;
            if !Pool::of(net).is_some_and(|p| p.subnet.contains(addr)) {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid endpoint settings:\nno configured subnet or ip-range contain the IP address {ip}"
                )));
            }
        }
        if s.aliases.as_ref().is_some_and(|a| !a.is_empty()) && !user_defined(&net.name) {
            return Err(EngineError::InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
        if !s.mac_address.is_empty() {
            executor::parse_mac(&s.mac_address).map_err(net_err("--mac-address"))?;
        }
        Ok(())
    }

    // ---- daemon start ----

    /// At daemon start, before containers are re-adopted: the predefined
    /// networks `bridge` (berth0, 172.17.0.0/16), `host` and `none` exist,
    /// and the default bridge's link and NAT are in place.
    pub(crate) fn init_networks(&self) -> EngineResult<()> {
        // The namespace directory is a daemon-lifetime mount made before any
        // container needs it. An engine without network drivers (unit tests
        // on the host) makes no namespaces and so mounts nothing.
        if !self.drivers.network.names().is_empty() {
            self.prepare_netns_dir()?;
        }
        let existing = self.network_records()?;
        for name in PREDEFINED {
            if existing.iter().any(|n| n.name == name) {
                continue;
            }
            let mut options = BTreeMap::new();
            let (driver, config) = match name {
                "bridge" => {
                    for (k, v) in [
                        ("com.docker.network.bridge.default_bridge", "true"),
                        ("com.docker.network.bridge.enable_icc", "true"),
                        ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                        ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                        ("com.docker.network.bridge.name", DEFAULT_BRIDGE_NAME),
                        ("com.docker.network.driver.mtu", "1500"),
                    ] {
                        options.insert(k.to_string(), v.to_string());
                    }
                    let entry = IpamConfigEntry {
                        subnet: ipam::DEFAULT_BRIDGE_SUBNET.into(),
                        ip_range: String::new(),
                        gateway: DEFAULT_BRIDGE_GATEWAY.into(),
                    };
                    ("bridge", vec![entry])
                }
                "host" => ("host", vec![]),
                _ => ("null", vec![]),
            };
            let record = NetworkRecord {
                name: name.into(),
                id: random_id()?,
                created: berth_runtime::clock::now_rfc3339(),
                scope: "local".into(),
                driver: driver.into(),
                enable_ipv6: false,
                ipam: berth_model::network::Ipam { driver: "default".into(), options: None, config },
                internal: false,
                attachable: false,
                options,
                labels: BTreeMap::new(),
            };
            // The default bridge's subnet is fixed, like a user-configured one, but
            // Docker refuses `--ip` there for being the default network anyway.
            self.store_network(&record, true)?;
        }
        // Every network's driver learns it again and its host side is (re)made.
        for net in self.network_records()? {
            let Some(driver) = self.drivers.network.get(&net.driver) else {
                tracing::warn!(network = %net.name, driver = %net.driver, "no driver for the network; its containers cannot start");
                continue;
            };
            let applied = driver
                .create_network(&Self::create_request(&net))
                .map_err(|e| driver_error(&format!("network {}", net.name), e))
                .and_then(|plan| self.apply_plan(driver.as_ref(), &plan, None, &format!("setting up network {}", net.name)));
            match applied {
                Ok(a) => a.keep(),
                Err(e) => {
                    tracing::warn!(network = %net.name, error = %e, "setting up the network at daemon start")
                }
            }
        }
        // Allocations and namespaces a crash left behind.
        let containers = self.containers.all()?;
        let endpoints: BTreeSet<String> = containers
            .iter()
            .flat_map(|c| c.networks.values().map(|s| s.endpoint_id.clone()))
            .filter(|e| !e.is_empty())
            .collect();
        self.state.ipam.retain(&self.store, &|e| endpoints.contains(e))?;
        let keys: BTreeSet<String> =
            containers.iter().map(|c| c.sandbox_key.clone()).filter(|k| !k.is_empty()).collect();
        if let Ok(entries) = fs::read_dir(netns::netns_dir(&self.run)) {
            for e in entries.flatten() {
                let p = e.path();
                if !keys.contains(&p.to_string_lossy().into_owned()) {
                    if let Err(err) = netns::remove(&p) {
                        tracing::warn!(path = %p.display(), error = %err, "removing a network namespace no container uses");
                    }
                }
            }
        }
        Ok(())
    }
}

/// The host's resolvers the embedded DNS forwards to (loopback ones do not
/// answer from a container's namespace).
fn host_resolvers() -> Vec<SocketAddr> {
    let conf = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

fn label_matches(labels: &BTreeMap<String, String>, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
        None => labels.contains_key(v),
    }
}

/// `until=` of prune: a timestamp (RFC 3339, unix seconds) or a duration ago (`24h`, `10m`).
fn parse_until(v: &str) -> EngineResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp());
    }
    if let Ok(secs) = v.parse::<f64>() {
        return Ok(secs as i64);
    }
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len()));
    let n: f64 = num.parse().map_err(|_| EngineError::InvalidArgument(format!("invalid until value {v:?}")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(EngineError::InvalidArgument(format!("invalid until value {v:?}: use e.g. 24h or a timestamp")))
        }
    };
    Ok(chrono::Utc::now().timestamp() - secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_values() {
        assert!(parse_until("24h").unwrap() < chrono::Utc::now().timestamp());
        assert_eq!(parse_until("2024-01-01T00:00:00Z").unwrap(), 1704067200);
        assert!(parse_until("soon").is_err());
    }
}

#[cfg(test)]
mod slow_plugin_tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::{Arc, Mutex, NetworkCreate, NetworkDriver, NetworkPlan};
    use crate::engine::Engine;
    use crate::drivers::Drivers;
    use berth_model::drivers::{DriverResult, NetworkCapabilities};
    use crate::config::EngineConfig;
    use crate::image::tests::DirDriver;
    use berth_model::network::{EndpointCreateRequest, EndpointInfo, Ipam, IpamConfigEntry, JoinRequest, NetworkCreateRequest};

    /// A driver whose plans change nothing; a `confined` one (a plugin) may
    /// be told to hold one call (`create_network` or `delete_network`) until
    /// released.
    struct Quiet {
        name: &'static str,
        confined: bool,
        hold: Mutex<Option<Hold>>,
    }

    struct Hold {
        method: &'static str,
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    impl Quiet {
        fn maybe_hold(&self, method: &str) {
            let mut slot = self.hold.lock().unwrap();
            if slot.as_ref().is_some_and(|h| h.method == method) {
                let hold = slot.take().unwrap();
                drop(slot);
                hold.entered.send(()).unwrap();
                hold.release.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        }
    }

    /// An engine with the drivers `slow` (a plugin holding `method` once)
    /// and `fast` (in-tree); the channels say when `slow` is held and let it go.
    fn engine_with_slow(dir: &std::path::Path, method: &'static str) -> (Arc<Engine>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let drivers = Drivers::default();
        let hold = Hold { method, entered: entered_tx, release: release_rx };
        drivers.network.register("slow", Arc::new(Quiet { name: "slow", confined: true, hold: Mutex::new(Some(hold)) }));
        drivers.network.register("fast", Arc::new(Quiet { name: "fast", confined: false, hold: Mutex::new(None) }));
        let storage = Arc::new(DirDriver { root: dir.join("layers") });
        std::fs::create_dir_all(dir.join("layers")).unwrap();
        let config = EngineConfig::new(dir.join("root"), dir.join("run"));
        (Engine::open(config, storage, drivers).unwrap(), entered, release)
    }

    impl NetworkDriver for Quiet {
        fn name(&self) -> &str {
            self.name
        }
        fn confined(&self) -> bool {
            self.confined
        }
        fn capabilities(&self) -> NetworkCapabilities {
            NetworkCapabilities::default()
        }
        fn create_network(&self, _: &NetworkCreateRequest) -> DriverResult<NetworkPlan> {
            self.maybe_hold("create_network");
            Ok(NetworkPlan::default())
        }
        fn delete_network(&self, _: &str) -> DriverResult<NetworkPlan> {
            self.maybe_hold("delete_network");
            Ok(NetworkPlan::default())
        }
        fn create_endpoint(&self, _: &EndpointCreateRequest) -> DriverResult<EndpointInfo> {
            Ok(EndpointInfo::default())
        }
        fn delete_endpoint(&self, _: &str, _: &str) -> DriverResult<()> {
            Ok(())
        }
        fn join(&self, _: &JoinRequest) -> DriverResult<NetworkPlan> {
            Ok(NetworkPlan::default())
        }
        fn leave(&self, _: &str, _: &str) -> DriverResult<NetworkPlan> {
            Ok(NetworkPlan::default())
        }
    }

    fn request(name: &str, driver: &str, subnet: &str) -> NetworkCreate {
        NetworkCreate {
            name: name.into(),
            driver: driver.into(),
            ipam: Ipam { driver: "default".into(), options: None, config: vec![IpamConfigEntry { subnet: subnet.into(), ..Default::default() }] },
            ..Default::default()
        }
    }

    #[test]
    fn a_plugin_slow_to_create_a_network_holds_up_only_that_network() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, entered, release) = engine_with_slow(dir.path(), "create_network");

        let held = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.networks().create(request("held", "slow", "10.60.0.0/24")))
        };
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        // While the plugin holds its create: other networks are made at once,
        // and the held one's name and subnet are taken.
        let started = Instant::now();
        engine.networks().create(request("other", "fast", "10.61.0.0/24")).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let e = engine.networks().create(request("held", "fast", "10.62.0.0/24")).unwrap_err().to_string();
        assert!(e.contains("network with name held already exists"), "{e}");
        let e = engine.networks().create(request("overlap", "fast", "10.60.0.0/25")).unwrap_err().to_string();
        assert!(e.contains("overlaps"), "{e}");
        release.send(()).unwrap();
        held.join().unwrap().unwrap();
        // Once done, the reservation is gone: its record holds name and subnet.
        let e = engine.networks().create(request("held", "fast", "10.63.0.0/24")).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        engine.networks().remove("held").unwrap();
        engine.networks().create(request("again", "fast", "10.60.0.0/24")).unwrap();
    }

    #[test]
    fn a_plugin_slow_to_remove_a_network_holds_up_only_that_network() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, entered, release) = engine_with_slow(dir.path(), "delete_network");
        engine.networks().create(request("held", "slow", "10.70.0.0/24")).unwrap();
        engine.networks().create(request("spare", "fast", "10.71.0.0/24")).unwrap();
        let held = {
            let engine = engine.clone();
            std::thread::spawn(move || engine.networks().remove("held"))
        };
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        // While the plugin holds its delete: other networks come and go at
        // once; the held one is neither removed twice nor pruned.
        let started = Instant::now();
        engine.networks().create(request("other", "fast", "10.72.0.0/24")).unwrap();
        engine.networks().remove("other").unwrap();
        let e = engine.networks().remove("held").unwrap_err().to_string();
        assert!(e.contains("network held is being removed"), "{e}");
        let pruned = engine.networks().prune(&Default::default()).unwrap();
        assert_eq!(pruned, vec!["spare".to_string()]);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        release.send(()).unwrap();
        held.join().unwrap().unwrap();
        assert!(engine.networks().find("held").is_err(), "removed once the plugin answered");
        engine.networks().create(request("held", "fast", "10.70.0.0/24")).unwrap();
    }
}
